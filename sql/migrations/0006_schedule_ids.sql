-- A schedule has a number as well as its name: clients of other job systems address
-- schedules by the id their create call returned. Existing schedules are numbered now.
ALTER TABLE skiplock.schedules ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE skiplock.schedules ADD CONSTRAINT schedules_id_is_unique UNIQUE (id);
