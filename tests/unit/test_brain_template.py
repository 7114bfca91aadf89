"""The synthetic anatomy's template comes from nilearn's installed package, offline."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from components.synthetic import brain


def test_template_files_are_the_ones_nilearns_loaders_read_from_its_package(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the template must never be downloaded")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    import nilearn
    from nilearn.datasets import load_mni152_gm_template, struct

    package = Path(nilearn.__file__).parent
    loaders = {"t1": struct.MNI152_FILE_PATH, "gm": struct.GM_MNI152_FILE_PATH,
               "wm": struct.WM_MNI152_FILE_PATH}
    for name, path in loaders.items():
        ours = brain.template_path(name)
        assert ours == Path(path) and ours.is_file()
        assert package in ours.parents
    image = load_mni152_gm_template(resolution=1)   # offline: the packaged file
    assert image.shape == (197, 233, 189)


def test_template_tissues_and_lesion_sites():
    template = brain.load_template()
    assert template.tissues.shape[0] == len(brain.TISSUES) == 5
    wm, gm = template.tissues[0], template.tissues[1]
    centre = tuple(template.voxel(np.array([26.0, -10.0, 28.0])).astype(int))  # corona radiata
    assert wm[centre] > 200 and gm[centre] < 60
    for region in brain.REGIONS:
        sites = template.candidates[region]
        assert len(sites) > 100, region
        index = template.voxel(sites.T).round().astype(int)
        assert np.mean(wm[tuple(index)] > 127) > 0.9, region
    assert template.candidates["infratentorial"][:, 2].max() < -18


@pytest.mark.parametrize("growth", [-0.15, 0.35])
def test_to_patient_inverts_to_template(growth):
    rng = np.random.default_rng(4)
    subject = brain.make_subject(rng, multiple_sclerosis=False, slab=(0.0, 20.0),
                                 settings=brain.SynthSettings())
    subject = brain.Subject(subject.linear, subject.translation, subject.displacement, growth,
                            subject.lesions)
    mni = np.array([[20.0, -30.0, 10.0], [-15.0, 5.0, 30.0], [0.0, -50.0, -30.0]]).T
    assert np.abs(subject.to_template(subject.to_patient(mni)) - mni).max() < 0.1
