"""Learning-rate schedules, as plain functions of the epoch.

- ``exponential`` (paper 001): from ``lr`` at the first epoch to ``lr_end`` at the last,
  geometrically (0.1 -> 0.0001 over 120 epochs in the paper);
- ``step`` (paper 002): ``lr * gamma ** (epoch // step_size)`` (divide by 10 every 10 epochs);
- ``constant``.

>>> round(learning_rate("exponential", 0, epochs=120), 6), round(learning_rate("exponential", 119, epochs=120), 6)
(0.1, 0.0001)
>>> learning_rate("step", 25, epochs=180, lr=1.0, step_size=10, gamma=0.1)
0.010000000000000002
"""

from __future__ import annotations

from xtalscreen.errors import ParameterError, check_positive

__all__ = ["SCHEDULES", "learning_rate"]

SCHEDULES = ("exponential", "step", "constant")


def learning_rate(schedule: str, epoch: int, *, epochs: int, lr: float = 0.1,
                  lr_end: float = 1e-4, step_size: int = 10, gamma: float = 0.1) -> float:
    """Learning rate for 0-based ``epoch`` of ``epochs``.

    Parameters
    ----------
    schedule : {"exponential", "step", "constant"}
    epoch : int
        0-based epoch.
    epochs : int, keyword-only
        Total epochs of the run (the exponential schedule reaches ``lr_end`` at ``epochs - 1``).
    lr, lr_end : float, keyword-only
        Start and (exponential) end learning rate.
    step_size : int, keyword-only
        Epochs between step decays.
    gamma : float, keyword-only
        Step decay factor.
    """
    lr = check_positive("lr", lr)
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if int(epochs) != epochs or epochs < 1:
        raise ParameterError(f"epochs must be an integer >= 1, got {epochs!r}")
    if epoch < 0:
        raise ParameterError(f"epoch must be >= 0, got {epoch!r}")
    if schedule == "constant":
        return lr
    if schedule == "exponential":
        lr_end = check_positive("lr_end", lr_end)
        if epochs == 1:
            return lr
        t = min(float(epoch), epochs - 1.0) / (epochs - 1.0)
        return lr * (lr_end / lr) ** t
    if int(step_size) != step_size or step_size < 1:
        raise ParameterError(f"step_size must be an integer >= 1 (epochs), got {step_size!r}")
    gamma = check_positive("gamma", gamma)
    return lr * gamma ** (int(epoch) // int(step_size))
