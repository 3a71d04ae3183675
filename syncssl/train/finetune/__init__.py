"""``python -m syncssl.train.finetune``: the module torchrun launches for ``syncssl-finetune`` (in ``__main__``)."""
