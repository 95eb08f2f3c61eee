drop table works;
drop function pp_touch_updated_on();
