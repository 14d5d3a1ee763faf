"""The machinery that runs the model, apart from the model itself.

* `fusion.run.lightning`: the Lightning command line of ``fusion fit``, ``validate``, ``test``
  and ``predict``;
* `fusion.run.hardware`: the device and numeric precision, chosen from the hardware;
* `fusion.run.budget`: a run fitted to a wall-clock budget;
* `fusion.run.optim`: optimizer groups and learning-rate schedules;
* `fusion.run.callbacks`: resumption, per-process random draws, figures, summary, step timing;
* `fusion.run.model_file`: checkpoints loaded safely, and models exported to share.
"""
