"""What realistic.py and reinstall.py share about a simulator folder SIM."""
import os


def localconfig(sim, key, default):
    """A key of SIM/localconfig (`key = value` lines), or `default`."""
    try:
        with open(os.path.join(sim, "localconfig")) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition(" = ")
                if k == key:
                    return v
    except OSError:
        pass
    return default


def store_dir(name):
    """server.py's store_dir: an account's folder under SIM/store (the name as is; "/" nests)."""
    if any(p in ("", ".", "..") for p in name.split("/")):
        return name.replace("%", "%25").replace("/", "%2F")
    return name
