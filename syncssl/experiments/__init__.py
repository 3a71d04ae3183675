"""What runs training and evaluation end to end: ``syncssl-eval`` (:mod:`.evaluate`, :mod:`.analysis`),
``syncssl-reproduce`` (:mod:`.reproduce`, and :mod:`.protocol` with ``--grid``), ``syncssl-transfer-curve``
(:mod:`.transfer_curve`). The grids and presets they read live in ``grids/`` and ``ablations/``."""
