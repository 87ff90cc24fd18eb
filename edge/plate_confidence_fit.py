"""The plate confidence model, fitted on the dev scenes (bench.plates_calibrate).

Dev seeds 1, 4, 5, 6, 7, 8 (GENERATED scenes, edge.plate_scenes; never the test seeds 2 and 3):
583 readings had a second look (81 wrong), 551 did not (0 wrong).
Do not edit by hand: refit with ``python -m bench.plates_calibrate fit --write``.
"""

from edge.plate_confidence import ConfidenceModel

FITTED = ConfidenceModel(
    look_below=0.98,
    sure=0.9951,
    min_width=115,
    min_row_width=98,
    mean=(2.853958, 0.797542, 0.87187, 0.076329, 0.915952, 0.567753),
    scale=(3.232621, 0.304264, 0.208806, 0.117093, 0.27746, 0.495388),
    weights=(0.78078, 0.879307, 0.160997, -0.330162, 0.198646, 0.406377),
    bias=3.1267,
    table=(
        (0.0, 0.0),
        (0.0066, 0.0),
        (0.0483, 0.0),
        (0.0498, 0.0239),
        (0.1872, 0.0239),
        (0.1915, 0.0325),
        (0.2265, 0.0325),
        (0.2585, 0.0996),
        (0.3055, 0.0996),
        (0.3094, 0.3938),
        (0.7608, 0.3938),
        (0.77, 0.3938),
        (0.7878, 0.3938),
        (0.7901, 0.7131),
        (0.9157, 0.7131),
        (0.9161, 0.7131),
        (0.9374, 0.7131),
        (0.9377, 0.9936),
        (0.9974, 0.9936),
        (1.0, 0.9936),
    ),
)
