def iter_event_frames(*a, **k):
    raise NotImplementedError
