"""The joint analysis report (社情研判): what the compound's departments review together each week
and month, per compound (site) or per street, as HTML and PDF (see docs/reports.md).

``period`` says which days a report covers, ``figures`` counts them from the database,
``charts`` draws them with matplotlib, ``documents`` writes the HTML and the PDF, ``service``
stores them in ``AnalysisReport`` and runs the schedule.
"""
