-- A send is updated in place several times on its way out (claimed, on
-- the wire, sent). Free room on its page lets those new row versions stay
-- there: the claim, which changes no indexed column, becomes a HOT update
-- (no index entries), and the later versions do not spill to other pages.
-- A sent row is about twice the size of a queued one, so the room is used.
ALTER TABLE sends SET (fillfactor = 50);
