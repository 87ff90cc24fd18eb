// The report form: the building suggestions follow the chosen site.
(function () {
  "use strict";
  var site = document.getElementById("site");
  var building = document.getElementById("building");
  if (!site || !building) { return; }
  function follow() { building.setAttribute("list", "buildings-" + site.value); }
  site.addEventListener("change", follow);
  follow();
}());
