import pytest

from calc import clamp, mean


def test_mean_of_two():
    assert mean([2, 4]) == 3


def test_mean_of_one():
    assert mean([5]) == 5


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0
    assert clamp(2, 0, 3) == 2
