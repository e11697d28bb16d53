#!/usr/bin/env bash
# Runs hfmesh's test suite. Sets up what the tests need first: a Python virtualenv in .venv with
# the real huggingface_hub client (the compatibility tests check hfmesh's trees with it).
set -euo pipefail
cd "$(dirname "$0")/.."

HF_HUB_VERSION="2.4.0"
if ! .venv/bin/python -c "import huggingface_hub as h; assert h.__version__ == '$HF_HUB_VERSION'" 2>/dev/null; then
    echo "test.sh: creating .venv with huggingface_hub==$HF_HUB_VERSION" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "huggingface_hub==$HF_HUB_VERSION"
fi

# The mDNS test and the netns simulation test (tests/simulate_netns.rs) put agents in network
# namespaces: they need `ip` and `tc` (iproute2) and root.
if ! { command -v ip && command -v tc; } >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing iproute2" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

export HFMESH_TEST_PYTHON="$PWD/.venv/bin/python"
cargo test --locked "$@"
