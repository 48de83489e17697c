"""Membership fees for the cycling club, in euros."""

ANNUAL_FEE = 45
JUNIOR_DISCOUNT = 0.4


def fee_for(age: int) -> float:
    """Riders under 18 pay less."""
    if age < 18:
        return ANNUAL_FEE * (1 - JUNIOR_DISCOUNT)
    return ANNUAL_FEE


def share_of_van_hire(total: float, riders: int) -> float:
    """Splits the cost of the hired van evenly between the riders."""
    return round(total / riders, 2)
