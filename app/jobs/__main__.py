"""``python -m app.jobs worker ...`` = ``tradeloop jobs worker ...`` (what ``serve`` starts)."""
import sys

from app.cli import main

main(["jobs", *sys.argv[1:]])
