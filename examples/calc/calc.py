"""A tiny calculator with a bug for Mulligan's demo."""


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / (len(values) - 1)


def clamp(value, low, high):
    """`value` limited to the range [low, high]."""
    return max(low, min(value, high))
