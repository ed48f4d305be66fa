"""The Qt-free molecule view model shows sigma and names out-of-domain predictions."""

import numpy as np

from napari_cxdi import molecules
from napari_cxdi.scann import DomainReport, ScannPrediction
from napari_cxdi.scann import view as mol


def _pred(reliable: bool, sigma: float = 0.085):
    dom = DomainReport(reliable, [] if reliable else ["elements outside the training set: S"],
                       [] if reliable else ["elements"], None, [] if reliable else [0])
    return ScannPrediction({"homo": -6.1234}, {"homo": "eV"}, np.array([0.5, 0.25, 0.25]),
                           sigma={"homo": sigma}, ga_sigma=np.array([0.01, 0.02, 0.0]), domain=dom)


def test_molecules_is_an_alias_of_the_view_model():
    assert molecules is mol and molecules.iter_predict is mol.iter_predict


def test_property_text_carries_sigma_and_reliability():
    assert mol.format_property(_pred(True), "homo") == "-6.123 ± 0.085 eV"
    assert mol.format_property(_pred(False), "homo") == "-6.123 ± 0.085 eV (unreliable)"
    assert mol.format_property(_pred(True, float("nan")), "homo") == "-6.123 eV"


def test_domain_summary_names_frames_and_reason():
    assert mol.domain_summary([_pred(True), _pred(True)]) is None
    text = mol.domain_summary([_pred(True), _pred(False), _pred(False)])
    assert "2 of 3 frames" in text and "Frame 1" in text and "elements outside the training set: S" in text


def test_atom_info_shows_ga_spread_and_flag():
    from ase.build import molecule

    atoms = molecule("H2O")
    text = mol.atom_info(atoms, 0, _pred(False))
    assert "N·α = 1.50 ± 0.03" in text and "outside the training domain" in text
