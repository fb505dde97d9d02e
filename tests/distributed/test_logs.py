"""Sharded log generation: 2 ranks write the dataset 1 process writes, byte for byte; a
rank that dies leaves nothing that loads."""

from __future__ import annotations

import pytest

from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.distributed.logs import generate_sharded_logs
from drpo_rl.distributed.shards import shard_seed

LOGS = {"env_name": "RecSimBanditDiscrete", "scenario": "medium", "num_items": 20}
ROWS, SHARDS = 600, 3


def _files(root):
    return {
        path.relative_to(root): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def two_ranks(launch, tmp_path_factory):
    """2 ranks write the logs, then again where rank 1 dies after its first shard."""
    folder = tmp_path_factory.mktemp("two")
    return folder, launch("sharded_logs", 2, folder, str(ROWS), str(SHARDS))


def test_two_ranks_write_what_one_process_writes_byte_for_byte(two_ranks, tmp_path):
    alone = generate_sharded_logs(
        num_samples=ROWS, path=tmp_path / "one" / "logs", seed=0, shards=SHARDS, **LOGS
    )
    one, two = _files(tmp_path / "one" / "logs"), _files(two_ranks[0] / "logs")
    assert one.keys() == two.keys() and one == two
    assert alone.metadata["shards"]["rows"] == [[0, 200], [200, 400], [400, 600]]
    # Shard 2 (rank 0 wrote it, after shard 0) holds what generate_logs writes for its
    # rows with the shard's seed.
    own = generate_logs(
        num_samples=200, path=tmp_path / "shard-2", seed=shard_seed(0, 2), progress=False, **LOGS
    )
    assert (alone[400:600] == own[:]).all()
    # Re-opening with the same settings generates nothing; other settings are refused.
    again = generate_sharded_logs(
        num_samples=ROWS, path=tmp_path / "one" / "logs", seed=0, shards=SHARDS, **LOGS
    )
    assert (again[:] == alone[:]).all()
    with pytest.raises(ValueError, match="written in 3 shard\\(s\\), not 2"):
        generate_sharded_logs(
            num_samples=ROWS, path=tmp_path / "one" / "logs", seed=0, shards=2, **LOGS
        )
    with pytest.raises(ValueError, match="seed: stored 0, requested 1"):
        generate_sharded_logs(
            num_samples=ROWS, path=tmp_path / "one" / "logs", seed=1, shards=SHARDS, **LOGS
        )


def test_a_rank_dying_leaves_no_dataset_that_loads(two_ranks):
    folder, results = two_ranks
    assert results[1].returncode == 3
    assert results[0].returncode != 0
    assert "Connection" in results[0].stderr  # gloo's word for the lost rank
    assert not OfflineLogs.is_complete(folder / "logs-die")
    with pytest.raises(FileNotFoundError):
        OfflineLogs(folder / "logs-die")
    # Nothing is left behind either: the staging folder went with rank 0's error.
    assert sorted(p.name for p in folder.iterdir() if "logs-die" in p.name) == []


def test_bad_requests_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="shards: expected"):
        generate_sharded_logs(num_samples=3, path=tmp_path / "logs", seed=0, shards=4, **LOGS)
    with pytest.raises(ValueError, match="UserSession has sessions"):
        generate_sharded_logs(
            "UserSession", "medium", 100, path=tmp_path / "logs", seed=0, shards=2
        )
    assert not (tmp_path / "logs").exists()
