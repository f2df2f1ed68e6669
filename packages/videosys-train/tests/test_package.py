import importlib


def test_package_imports_with_version():
    module = importlib.import_module("videosys.train")
    assert module.__version__.count(".") == 2
