"""Parses Prometheus' text exposition format, read from stdin, with the
official Python client's parser (`prometheus_client.parser`), and prints
the metric families it found as one line of JSON:

    [{"name": ..., "type": ..., "samples": [{"name": ..., "labels": {...}, "value": ...}]}]

Used by `tests/it/demo_metrics.rs`: a scrape this parser rejects, or reads
differently from what the test expects, is one a Prometheus server would
have trouble with too. Note that the parser names a counter's family
without its `_total` suffix (its samples keep it).
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def number(value):
    # JSON has no infinities or NaN: spell them as Prometheus does.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def main():
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families.append(
            {
                "name": family.name,
                "type": family.type,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": number(s.value)}
                    for s in family.samples
                ],
            }
        )
    print(json.dumps(families))


if __name__ == "__main__":
    main()
