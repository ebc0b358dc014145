import numpy as np
import scipy.optimize  # noqa: F401  (the environment the new-env figure compares against)


def main(a: list[list[float]], b: list[float]) -> dict:
    """Solve a small linear system and return the solution and its norm."""
    x = np.linalg.solve(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return {"x": x.tolist(), "norm": float(np.linalg.norm(x))}
