"""What started this worker and where, as its scheduler sees it: sent in its Hello.

A launcher that starts ``harness worker`` (harness/launchers/ray.py) sets ``HARNESS_LAUNCHER``,
``HARNESS_LAUNCH_SLOT`` (which of its workers this is: the head gives that worker id) and
``HARNESS_LAUNCH_NODE``. Under Slurm, its own variables say the same. The head records it
in the report; only the slot changes what the head does.
"""

from __future__ import annotations

import os

_SLURM = {"job": "SLURM_JOB_ID", "step": "SLURM_STEP_ID", "task": "SLURM_PROCID",
          "node": "SLURMD_NODENAME"}  # fmt: skip


def launch_info(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ) if env is None else env
    if env.get("HARNESS_LAUNCHER"):
        info = {"launcher": env["HARNESS_LAUNCHER"]}
        for key in ("slot", "node"):
            value = env.get(f"HARNESS_LAUNCH_{key.upper()}")
            if value:
                info[key] = value[:200]
        return info
    if env.get("SLURM_JOB_ID"):
        info = {"launcher": "slurm"}
        info |= {k: env[v][:200] for k, v in _SLURM.items() if env.get(v)}
        return info
    return {"launcher": "remote"}
