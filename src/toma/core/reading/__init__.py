"""Reading incoming mail: classify, match to what was sent, decide. Pure: bytes in, values out."""
