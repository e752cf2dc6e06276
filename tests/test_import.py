import subprocess
import sys


def test_importing_the_package_does_nothing():
    """Importing course_utils must not seed, restyle matplotlib, or touch the network."""
    code = (
        "import random, matplotlib, torch\n"
        "s, rc, t = random.getstate(), dict(matplotlib.rcParams), torch.random.get_rng_state()\n"
        "import course_utils\n"
        "assert random.getstate() == s, 'python RNG touched'\n"
        "assert dict(matplotlib.rcParams) == rc, 'matplotlib style changed'\n"
        "assert torch.equal(torch.random.get_rng_state(), t), 'torch RNG touched'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
