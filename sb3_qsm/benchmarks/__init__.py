"""
sb3-qsm's benchmarks: the suites and their runner, the aggregation into the results page, the cost figures, and the
measurements behind the conversion, zoo-agent and multi-modality pages. Run them with
``python -m sb3_qsm.benchmarks <command>`` (``pip install "sb3-qsm[benchmarks]"``); their raw results are committed
under the repository's ``benchmarks/`` folder.
"""
