import sys
from pathlib import Path

import torch

# The helpers module (pab_tiny.py) sits beside the tests; importlib mode does not put it on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
# Tiny models: one thread is faster than several, and the machine is shared.
torch.set_num_threads(1)
