"""The pure ML core of mlloop: no Flask, no database, no bus (DataFrames and bytes in and out).

``data`` (class order, feature conversion), ``windows`` (walk-forward, purging, embargo),
``metrics``, ``calibration``, ``model`` (TrainedModel and its blob), ``train`` (the
walk-forward pipeline), ``scale`` (probabilities -> the 0..100 score, blending),
``inference`` (FastScorer, deep path, replay), ``drift``, ``abtest``, ``jsonable``.
Import the module you need: nothing is re-exported here, so importing the package is free.
"""
