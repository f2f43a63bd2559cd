"""walkerOS mapping language: value configs, rule lookup, validation and the column plan."""
