drop trigger api_keys_changed on api_keys;
drop trigger api_keys_made_or_removed on api_keys;
drop function pp_announce_api_keys_changed();
