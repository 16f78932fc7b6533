import time
from datetime import UTC, datetime
from tests.test_validation import *  # noqa
from tests.test_validation import CASES, flat, add, rules, record_range

async def test_probe(sessionmaker, db_url):
    if "sqlite" in db_url: return
    builders = [p for p, _ in CASES.values()]
    now = datetime.now(UTC)
    t = time.perf_counter()
    await add(sessionmaker, *flat(*(builders[pid % 8](pid, now) for pid in range(1, 2001))))
    print("add", time.perf_counter() - t)
    from activities.validation import RULES, _upsert
    async with sessionmaker() as session:
        for kind, rule in RULES.items():
            t = time.perf_counter()
            n = await _upsert(session, kind, rule(1, 3000, now, rules()), now)
            print(kind, n, time.perf_counter() - t)
        await session.commit()
