"""One distribution for the MS-MRI pipeline; dependencies are pinned in requirements.lock."""
from setuptools import find_packages, setup

setup(
    name="ms-mri-pipeline",
    version="0.1.0",
    description="TFX / TF-Serving pipeline predicting multiple sclerosis from brain-MRI DICOM studies",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline*", "components*", "serving*", "schemas*", "mspipe*"]),
    package_data={"schemas": ["*.pbtxt"], "serving": ["deploy/*", "web/static/*"]},
    entry_points={"console_scripts": ["mspipe = mspipe.main:main"]},
)
