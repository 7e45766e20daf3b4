import numpy as np
import pytest

from duia_spark.evaluation.cluster_recovery import adjusted_mutual_information


def test_a_renamed_copy_scores_one_and_an_independent_labeling_about_zero():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 8, 2000)
    renamed = (groups * 5 + 3) % 8 * 10  # the same partition under other names
    assert adjusted_mutual_information(groups, renamed) == pytest.approx(1.0)
    independent = rng.integers(0, 8, 2000)
    assert abs(adjusted_mutual_information(groups, independent)) < 0.01


def test_chance_is_corrected_even_with_many_more_clusters_than_groups():
    # 128 random clusters of 2,000 items share much raw mutual information with 8
    # groups by chance; the adjustment takes it away.
    rng = np.random.default_rng(1)
    assert (
        abs(adjusted_mutual_information(rng.integers(0, 8, 2000), rng.integers(0, 128, 2000)))
        < 0.02
    )


def test_a_toy_clustering_scores_between_chance_and_perfect_as_it_mixes_groups():
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    split = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])  # every group cut in two
    mixed = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0])  # some items in the wrong group
    a_split = adjusted_mutual_information(groups, split)
    a_mixed = adjusted_mutual_information(groups, mixed)
    assert 0 < a_mixed < a_split < 1
    # Symmetric in its arguments.
    assert adjusted_mutual_information(split, groups) == pytest.approx(a_split)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        adjusted_mutual_information(np.zeros(3), np.zeros(4))
