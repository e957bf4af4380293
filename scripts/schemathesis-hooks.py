"""Schemathesis hooks for scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).

One filter: a multipart form whose field name holds a control character or a double quote
cannot be sent (RFC 7578: the name is a quoted-string in a header line, where such characters
break the header; the service's multipart parser refuses the whole form with a 400 "malformed
multipart form"). The schema lets a form carry fields it does not name (the service ignores
them, as the original FastAPI service did), and OpenAPI 3.0 cannot constrain their names, so
Schemathesis draws such names and then counts the 400 as a valid request refused. Those cases
are dropped; every other generated request is sent as drawn.
"""

import schemathesis


def _sendable(name):
    return not any(ord(c) < 0x20 and c != "\t" or c in '\x7f"' for c in str(name))


@schemathesis.hook
def filter_case(context, case):
    if (case.media_type or "").startswith("multipart/form-data") and isinstance(case.body, dict):
        return all(_sendable(name) for name in case.body)
    return True
