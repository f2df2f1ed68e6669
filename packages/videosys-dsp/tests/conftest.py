import sys
from pathlib import Path

# Spawned ranks import their entry points (dsp_testing, workers) by module name.
sys.path.insert(0, str(Path(__file__).parent))
