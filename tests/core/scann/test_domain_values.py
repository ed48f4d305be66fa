"""Applicability domain with hand-built atom vectors (no model): thresholds, distances, every check and
its message, neighbour-composition signatures."""

import json

import numpy as np
import pytest
import torch

from napari_cxdi.scann.domain import (UNKNOWN_ELEMENT_DISTANCE, DomainModel, DomainReport, _heavy, _sig_key,
                                      environment_signatures, fit_domain, structure_distance)

A = np.array
TRAIN = [A([6, 1, 1, 1, 1]), A([8, 1, 1]), A([6, 6, 8, 1])]


def domain(**kw):
    args = dict(train_numbers=TRAIN, ref_numbers=[A([6, 1, 1])],
                ref_features=[A([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])],
                val_numbers=[A([6, 1, 8])], val_features=[A([[0.0, 2.0], [1.0, 1.0], [5.0, 5.0]])], quantile=1.0)
    args.update(kw)
    return fit_domain(**args)


def test_fit_domain_values():
    d = domain()
    assert d["elements"] == [1, 6, 8] and d["periodic"] is False and d["signatures"] is None
    assert d["n_atoms"] == [3, 5] and d["n_heavy_atoms"] == [1, 3]
    assert d["threshold"] == {"6": 2.0, "1": 1.0}  # O has no reference atoms
    assert d["n_validation_atoms"] == {"6": 1, "1": 1}
    assert d["quantile"] == 1.0 and isinstance(d["quantile"], float)
    assert set(d["reference"]) == {"6", "1"} and d["reference"]["1"].dtype == torch.float16
    np.testing.assert_array_equal(d["reference"]["1"].float().numpy(), [[1, 0], [3, 0]])
    assert "member 0" in d["embedding"]
    two = domain(val_numbers=[A([6, 6, 1])], val_features=[A([[0.0, 2.0], [0.0, 4.0], [1.0, 0.5]])], quantile=0.5)
    assert two["threshold"]["6"] == pytest.approx(3.0) and two["threshold"]["1"] == pytest.approx(0.5)
    assert two["quantile"] == 0.5
    none = domain(val_numbers=[A([1])], val_features=[A([[1.0, 1.0]])])
    assert none["threshold"]["6"] == float("inf") and none["n_validation_atoms"]["6"] == 0
    one = domain(per_element=1)
    assert one["reference"]["1"].shape == (1, 2) and one["reference"]["6"].shape == (1, 2)
    assert domain(per_element=1, seed=0)["reference"]["1"].tolist() == one["reference"]["1"].tolist()
    seeds = {tuple(domain(per_element=1, seed=s)["reference"]["1"].float().numpy().ravel()) for s in range(12)}
    assert seeds == {(1.0, 0.0), (3.0, 0.0)}  # a seeded random subset
    assert domain(periodic=True)["periodic"] is True
    # float16 storage: the reference is rounded once, and the threshold measured against the rounded copy
    r = domain(ref_features=[A([[0.0, 0.0], [1.0, 0.0], [1.0001, 0.0]])],
               val_features=[A([[0.0, 2.0], [1.0, 1.0], [5.0, 5.0]])])
    assert r["reference"]["1"].float().numpy()[1, 0] == np.float16(1.0001)


def test_signatures_and_min_count():
    numbers = A([6, 1, 1, 8])
    center, neighbor = A([0, 0, 0, 1, 2, 3]), A([1, 2, 3, 0, 0, 0])
    sig = environment_signatures(numbers, center, neighbor, [1, 6, 8])
    np.testing.assert_array_equal(sig, [[6, 2, 0, 1, 0], [1, 0, 1, 0, 0], [1, 0, 1, 0, 0], [8, 0, 1, 0, 0]])
    assert sig.dtype == np.int64
    other = environment_signatures(A([6, 16, 1]), A([0, 0, 1, 2]), A([1, 2, 0, 0]), [1, 6])
    np.testing.assert_array_equal(other, [[6, 1, 0, 1], [16, 0, 1, 0], [1, 0, 1, 0]])
    small = environment_signatures(A([1, 1]), A([0, 1]), A([1, 0]), [1, 6, 8])  # elements beyond max(numbers)
    np.testing.assert_array_equal(small, [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0]])
    assert _sig_key([6, 2, 0, 1, 0]) == "6:2,0,1,0"
    d = domain(train_signatures=np.concatenate([sig, sig[1:2]]), min_signature_count=2)
    assert d["signatures"] == {"keys": ["1:0,1,0,0", "6:2,0,1,0", "8:0,1,0,0"], "counts": [3, 1, 1], "min_count": 2}
    dm = DomainModel(d)
    assert dm.min_signature_count == 2
    np.testing.assert_array_equal(dm.signature_counts(numbers, center, neighbor), [1, 3, 3, 1])
    rep = dm.check(numbers, False, edges=(center, neighbor))
    assert not rep.in_domain and rep.codes == ["environment"] and rep.flagged_atoms == [0, 3]
    assert rep.reasons == ["rare atomic environments (Voronoi neighbour composition seen fewer than 2 times among "
                           "the training atoms): atoms 0 (C with 2 H, 1 O neighbours, seen 1x), "
                           "3 (O with 1 C neighbours, seen 1x)"]
    assert rep.atom_distance is None
    ok = DomainModel(domain(train_signatures=sig, min_signature_count=1))
    assert ok.check(numbers, False, edges=(center, neighbor)).in_domain
    assert DomainModel(domain()).check(numbers, False, edges=(center, neighbor)).in_domain  # no signatures stored
    # an unknown element is flagged once (as an element), its odd neighbours are described as "other"
    rep = dm.check(A([6, 1, 1, 16]), False, edges=(center, neighbor))
    assert rep.codes == ["elements", "environment"] and rep.flagged_atoms == [0, 3]
    assert "0 (C with 2 H, 1 other neighbours, seen 0x)" in rep.reasons[1]
    # more than 4 rare atoms: "and N more"; an isolated atom has "no" neighbours
    iso = dm.check(A([8, 8, 8, 8, 8]), False, edges=(A([], int), A([], int)))
    assert "atoms 0 (O with no neighbours, seen 0x), 1 (O with no neighbours, seen 0x)" in iso.reasons[-1]
    assert iso.reasons[-1].endswith("seen 0x) and 1 more")


def test_atom_and_structure_distances():
    dm = DomainModel(domain())
    f = A([[0.0, 1.0], [3.0, 2.0], [0.0, 0.0]])
    dist = dm.atom_distance(A([6, 1, 8]), f)
    np.testing.assert_allclose(dist[:2], [0.5, 2.0])
    assert np.isnan(dist[2])
    assert dm.structure_distance([6, 1, 8], f) == pytest.approx((0.5 + 2.0 + UNKNOWN_ELEMENT_DISTANCE) / 3)
    assert structure_distance(None) != structure_distance(None)  # NaN
    assert np.isnan(structure_distance(np.zeros(0)))
    assert structure_distance(A([1.0, np.inf, np.nan])) == pytest.approx(1.0)
    assert UNKNOWN_ELEMENT_DISTANCE == 1.0
    # a zero threshold does not divide by zero
    z = domain(val_features=[A([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])])
    assert z["threshold"]["6"] == 0.0
    np.testing.assert_allclose(DomainModel(z).atom_distance(A([6]), A([[0.0, 1e-6]])), [1e6], rtol=1e-3)
    # references given as plain arrays (not tensors) work the same
    plain = dict(domain())
    plain["reference"] = {k: v.float().numpy() for k, v in plain["reference"].items()}
    np.testing.assert_allclose(DomainModel(plain).atom_distance(A([6, 1]), f[:2]), [0.5, 2.0])
    assert DomainModel.from_dict(domain()).elements == {1, 6, 8}


def test_check_reasons_and_codes():
    dm = DomainModel(domain())
    f = A([[0.0, 1.0], [3.0, 2.0], [0.0, 0.0]])
    rep = dm.check([6, 1, 8], False, features=f)
    assert not rep.in_domain and rep.codes == ["environment"] and rep.flagged_atoms == [1]
    assert rep.reasons == ["atomic environments far from all training environments: atoms 1 (H, 2.0x) "
                           "(distance / threshold set on held-out data)"]
    assert dm.check([6, 1, 8], False, features=A([[0.0, 1.0], [3.0, 1.0], [0.0, 0.0]])).in_domain  # ratio 1 is in
    rep = dm.check([6, 1, 16], True)
    assert rep.codes == ["elements", "periodic"] and rep.flagged_atoms == [2]
    assert rep.reasons[0] == "elements outside the training set: S (trained on H, C, O)"
    assert rep.reasons[1] == "periodic structure (crystal), but the model was trained on isolated molecules"
    assert DomainModel(domain(periodic=True)).check([6, 1, 1], True).in_domain
    rep = dm.check([1, 1], False)
    assert rep.codes == ["size"] and rep.reasons == [
        "size outside the training range: 2 atoms (training 3-5), 0 heavy atoms (training 1-3)"]
    rep = dm.check([6, 6, 6, 6, 1], False)
    assert rep.reasons == ["size outside the training range: 4 heavy atoms (training 1-3)"]
    assert dm.check([6, 1, 1, 1, 1], False).in_domain and dm.check([6, 6, 8], False).in_domain
    assert not dm.check([6, 1, 1, 1, 1, 1], False).in_domain
    # many far atoms: the 5 worst are named, worst first, then "and N more"
    n = 5
    feats = np.c_[np.arange(3, 3 + n) * 1.0 + 10, np.zeros(n)]
    rep = DomainModel(domain(train_numbers=[A([1] * 7), A([6, 1])])).check([1] * n, False, features=feats)
    assert "atoms 4 (H, 14.0x), 3 (H, 13.0x), 2 (H, 12.0x), 1 (H, 11.0x), 0 (H, 10.0x) (distance" in rep.reasons[-1]
    feats = np.c_[np.arange(7) * 1.0 + 10, np.zeros(7)]
    rep = DomainModel(domain(train_numbers=[A([1] * 7), A([6, 1])])).check([1] * 7, False, features=feats)
    assert "2 (H, 9.0x) and 2 more (distance" in rep.reasons[-1]
    assert rep.flagged_atoms == list(range(7))
    assert rep.atom_distance.shape == (7,)
    # no reference vectors at all: the embedding check is skipped
    empty = dict(domain())
    empty["reference"] = {}
    assert DomainModel(empty).check([6, 1, 8], False, features=f).atom_distance is None


def test_report_dict_and_message():
    rep = DomainReport(False, ["a", "b"], ["size", "elements"], A([0.123456, np.nan, np.inf]), [np.int64(2)])
    d = rep.to_dict()
    assert d == {"in_domain": False, "reasons": ["a", "b"], "codes": ["size", "elements"], "flagged_atoms": [2],
                 "atom_distance": [0.1235, None, None]}
    json.dumps(d)
    assert rep.message() == "a; b"
    assert DomainReport(True).message() == "in the training domain"
    assert DomainReport(True).to_dict()["atom_distance"] is None
    assert _heavy(A([1, 1, 6, 8])) == 2


# -- reviewed survivors of the first mutation run ------------------------------------------------------

def test_small_cases_and_defaults():
    assert structure_distance(A([0.5])) == 0.5
    assert _heavy(A([1, 2, 2, 6])) == 3  # helium is heavy (not hydrogen)
    empty = environment_signatures(A([], int), A([], int), A([], int), [1, 6])
    assert empty.shape == (0, 4)
    d = fit_domain(TRAIN, [A([6, 1, 1])], [A([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])], [A([6, 1])],
                   [A([[0.0, 2.0], [1.0, 1.0]])], train_signatures=np.zeros((2, 5), int))
    assert d["quantile"] == 0.999 and d["signatures"]["min_count"] == 3
    assert all(type(c) is int for c in d["signatures"]["counts"])
    assert d["embedding"] == "member 0, atom vector after the last local attention layer"
    many = np.c_[np.arange(2001.0), np.zeros(2001)]
    big = fit_domain([A([1, 1])], [A([1] * 2001)], [many], [A([1])], [A([[0.0, 1.0]])])
    assert big["reference"]["1"].shape == (2000, 2)


def test_element_without_reference_in_the_middle():
    d = domain(ref_numbers=[A([1, 8])], ref_features=[A([[1.0, 0.0], [7.0, 0.0]])],
               val_numbers=[A([1, 8])], val_features=[A([[1.0, 0.5], [7.0, 2.0]])])
    assert d["threshold"] == {"1": 0.5, "8": 2.0}  # C (6) has no reference atoms; O after it is kept


def test_threshold_uses_the_float16_reference():
    d = domain(ref_numbers=[A([1])], ref_features=[A([[1.0004, 0.0]])], val_numbers=[A([1])],
               val_features=[A([[1.0004, 0.0]])])
    assert d["threshold"]["1"] == pytest.approx(0.0004, abs=2e-6)  # float16(1.0004) == 1.0


def test_domain_model_minimal_dict_and_unknown_in_the_middle():
    bare = {"elements": [1, 6], "n_atoms": [1, 5], "n_heavy_atoms": [0, 2]}
    dm = DomainModel(bare)
    assert dm.d is bare and dm.periodic is False and dm.threshold == {} and dm._ref == {}
    assert not dm.check([1, 6], True).in_domain  # a crystal for a molecule-only domain
    full = DomainModel(domain())
    dist = full.atom_distance(A([1, 2, 6]), A([[3.0, 2.0], [0.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(dist[[0, 2]], [2.0, 0.5])  # He (2) unknown, C after it still measured
    assert np.isnan(dist[1])


def test_rare_lists_four_and_one_environment_code():
    numbers = A([6, 1, 1, 8])
    center, neighbor = A([0, 0, 0, 1, 2, 3]), A([1, 2, 0, 0, 0, 0])
    sig = environment_signatures(numbers, center, neighbor, [1, 6, 8])
    dm = DomainModel(domain(train_signatures=np.concatenate([sig] * 5)[:1], min_signature_count=2))
    four = dm.check(A([8, 8, 8, 8]), False, edges=(A([], int), A([], int)))
    assert four.reasons[-1].count("seen 0x") == 4 and "more" not in four.reasons[-1]
    five = dm.check(A([8, 8, 8, 8, 8]), False, edges=(A([], int), A([], int)))
    assert five.reasons[-1].count("seen 0x") == 4 and five.reasons[-1].endswith(" and 1 more")
    far = np.array([[9.0, 9.0]] * 4)
    both = dm.check(numbers, False, features=far, edges=(center, neighbor))
    assert both.codes == ["environment"] and len(both.reasons) == 2
