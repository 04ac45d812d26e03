import greenrt


def test_run_returns_main_value():
    assert greenrt.run(lambda: 42) == 42
