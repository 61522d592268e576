"""`nmt train` as torchrun starts it (`torchrun ... dist_worker.py train ...` runs what `torchrun -m nmt_cli.main
train ...` runs), writing a digest of this process's weights after every update to $DIGESTS/rank<RANK>.txt."""

from __future__ import annotations

import hashlib
import os
import sys

from nmt_cli.main import main

import nmt.update

real_update = nmt.update.update


def update(engine, optimizer, *args, **kwargs):
    result = real_update(engine, optimizer, *args, **kwargs)
    digest = hashlib.sha256()
    for group in optimizer.param_groups:
        for param in group["params"]:
            digest.update(param.detach().cpu().numpy().tobytes())
    with open(os.path.join(os.environ["DIGESTS"], f"rank{os.environ['RANK']}.txt"), "a") as f:
        f.write(digest.hexdigest() + "\n")
    return result


if __name__ == "__main__":
    nmt.update.update = update
    sys.argv = ["nmt", *sys.argv[1:]]
    main()
