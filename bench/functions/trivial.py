def main(x: float) -> float:
    return x + 1
