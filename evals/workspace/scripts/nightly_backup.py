"""Works out where tonight's copy of the inventory goes."""

BACKUP_ROOT = "backups"


def backup_folder(day: str) -> str:
    return f"{BACKUP_ROOT}/{day}"


def run_backup(day: str) -> tuple[str, str]:
    """The copy to make tonight: from where, to where."""
    target = backup_folder(day)
    # FIXME: keep only the last 7 backups
    return "data/inventory.csv", f"{target}/inventory.csv"
