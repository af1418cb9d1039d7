"""The compiled murmur2 must place every key exactly where Kafka's (and aiokafka's) own rule does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as python_murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.common.partitioner import KeyPartitioner, murmur2, partition_for


def test_the_compiled_hash_is_in_use() -> None:
    # `make install` installs the fast extra; without it this module silently falls back to pure Python.
    assert murmur2 is not python_murmur2


@given(st.binary(max_size=200))
def test_same_hash_as_aiokafka(key: bytes) -> None:
    assert murmur2(key) & 0x7FFFFFFF == python_murmur2(key) & 0x7FFFFFFF


@given(st.binary(min_size=0, max_size=80), st.integers(min_value=1, max_value=64))
def test_same_partition_as_aiokafka(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_for(key, partitions) == expected
    assert KeyPartitioner()(key, partitions, partitions) == expected


def test_known_kafka_values() -> None:
    # From the Java client's own test (UtilsTest.testMurmur2), so both sides are checked against Kafka.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in cases.items():
        assert murmur2(data) & 0xFFFFFFFF == expected & 0xFFFFFFFF
