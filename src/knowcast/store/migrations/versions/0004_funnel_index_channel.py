"""funnel index carries the channel

The funnel index (migration 0003) becomes (type, user_id, ts, channel): a PostgreSQL funnel broken down by
channel then reads each user's first step-1 event and its channel in one index-only pass (DISTINCT ON in
index order), and a SQLite funnel looks the channel up in the index instead of the table. The 3-column
index is dropped: the new one serves every query it served (same leading columns).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:30:00
"""

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_type_user_ts')
        batch_op.create_index('ix_events_type_user_ts_channel', ['type', 'user_id', 'ts', 'channel'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_type_user_ts_channel')
        batch_op.create_index('ix_events_type_user_ts', ['type', 'user_id', 'ts'], unique=False)
