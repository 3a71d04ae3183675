"""``python -m syncssl.train.finetune ...``: what torchrun launches for syncssl-finetune."""
from ...cli import finetune

if __name__ == "__main__":
    finetune(prog_name="syncssl-finetune")
