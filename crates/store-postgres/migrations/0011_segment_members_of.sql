-- A segment's members in subject order. Its size and its list of accounts read the members
-- alone: the segment's rows also hold every subject that may become a member by time alone
-- (for "no activity for two weeks", every other account of the workspace).
CREATE INDEX segment_members_of ON segment_members (workspace_id, segment_id, subject_id) WHERE member;
