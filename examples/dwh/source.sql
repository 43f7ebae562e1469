-- A demo OLTP schema for examples/dwh/dwh.yaml (run on the SOURCE database).
CREATE TABLE IF NOT EXISTS public.devices (
  id      integer PRIMARY KEY,
  label   text NOT NULL
);
CREATE TABLE IF NOT EXISTS public.trips (
  id          bigint PRIMARY KEY,
  device_id   integer NOT NULL,
  distance_m  integer NOT NULL,
  started_at  timestamptz NOT NULL,
  inserted_at timestamptz NOT NULL DEFAULT now() -- DB-insertion time: the watermark (manual §5.1)
);
CREATE INDEX IF NOT EXISTS trips_inserted_at ON public.trips (inserted_at);
INSERT INTO public.devices VALUES (1, 'truck 1'), (2, 'truck 2'), (3, 'van 1') ON CONFLICT DO NOTHING;
INSERT INTO public.trips (id, device_id, distance_m, started_at, inserted_at)
SELECT g, 1 + g % 3, 100 * g, now() - interval '2 days' + g * interval '1 minute', now() - interval '1 day' + g * interval '1 second'
  FROM generate_series(1, 1000) g
ON CONFLICT DO NOTHING;
