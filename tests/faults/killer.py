import os, signal
from lightning import Callback
class KillAfter(Callback):
    def __init__(self, epoch: int, where: str = "mid"):
        self.epoch, self.where = epoch, where
    def on_train_epoch_end(self, trainer, pl_module):
        if self.where == "end" and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.where == "mid" and trainer.current_epoch == self.epoch + 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)
