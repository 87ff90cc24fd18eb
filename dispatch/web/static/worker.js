// The worker view: the queue follows the live feed; a case page posts actions and after-photos.
"use strict";
(() => {
  const article = document.querySelector(".worker-case");
  if (article) {
    CW.bindActionForms(article, () => location.reload());
    const upload = document.getElementById("upload-form");
    if (upload) {
      upload.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = document.getElementById("upload-submit");
        button.disabled = true;
        try {
          await CW.api(`/api/v1/cases/${upload.dataset.caseId}/attachments`, {
            method: "POST", form: new FormData(upload),
          });
          location.reload();
        } catch (error) {
          CW.showError(article, error);
          button.disabled = false;
        }
      });
    }
  }
  const head = document.getElementById("queue-head");
  if (head) {
    let timer = null;
    CW.openFeed(head.dataset.feedSeq, () => {
      clearTimeout(timer);
      timer = setTimeout(() => CW.swap("/worker", "#queue", document.getElementById("queue")), 150);
    });
  }
})();
