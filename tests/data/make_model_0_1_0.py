"""How tests/data/model-0.1.0.keras was made, with napari-lymphmet 0.1.0 (commit cbef33b), before the ModelCard.

Kept for the record: it imports 0.1.0's module layout, so it runs only on that commit.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from napari_lymphmet.dataset import read_patch_table, split_by_slide  # 0.1.0 layout
from napari_lymphmet.model import TrainConfig, train

root = Path("/tmp/oldmodel")
rng = np.random.default_rng(0)
for label, mean in (("tumor", 170), ("normal", 90)):
    (root / "data" / label).mkdir(parents=True, exist_ok=True)
    for slide in ("a", "b"):
        for i in range(4):
            px = np.clip(rng.normal(mean, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / "data" / label / f"s{slide}_{i * 32}_0.png")
table = read_patch_table([root / "data"])
tr, va = split_by_slide(table, fraction=0.5, seed=0)
config = TrainConfig(backbone="small-cnn", weights="none", epochs=2, input_size=32, batch_size=4, patch_mpp=0.5)
print(train(tr, va, root / "model-0.1.0.keras", config).metadata)
