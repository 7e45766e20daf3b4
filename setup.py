"""Metadata and dependencies live in setup.cfg. The shipped configs (the top-level conf/
folder) are package data `duia_spark/conf/` of the wheel, so an installed wheel finds its
defaults (duia_spark/config.py, `shipped_conf_dir`)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["duia_spark", "duia_spark.*"]), "duia_spark.conf"],
    package_dir={"duia_spark.conf": "conf"},
    package_data={"duia_spark": ["py.typed"], "duia_spark.conf": ["*.yaml", "*.properties"]},
)
