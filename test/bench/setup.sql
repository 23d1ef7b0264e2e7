-- Run once in the anchor benchmark's database.
CREATE EXTENSION IF NOT EXISTS eventbus;
