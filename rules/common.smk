# Shared by the rule files: config lookups and paths. No rules here.

from functools import partial
from pathlib import Path

from vispipe.codedeps import script_hash
from vispipe.config import params_json as _params_json
from vispipe.layout import report_mark

# The config blocks a rule passes to its script, as compact JSON (its ``params``):
# Snakemake reruns a rule when, and only when, one of its blocks changes.
params_json = partial(_params_json, config)

DATA = f"data/{config['classify']['data']['name']}"


# A hash of scripts/<name> and every vispipe module it imports, passed as a param: editing that
# code reruns the rule (and what depends on it); editing other code does not (vispipe/codedeps.py).
code = partial(script_hash, Path(workflow.basedir) / "scripts")


# `snakemake --report report.html`: the outputs marked with in_report(category, subcategory, caption,
# **labels) go into one HTML file, grouped by category and subcategory (wildcards allowed:
# "{model}"), each with its caption from report/<caption>.rst (vispipe.layout.report_mark).
in_report = partial(report_mark, report, caption_dir="../report")
