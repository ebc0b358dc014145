def main(k: int) -> int:
    import MODULE  # noqa: F401  (not preloaded: the first call of an instance imports it)
    return k + 0
