"""An example project of one's own: a network (nets.py) and a data set (data.py) that dlrun trains
through the config files in ../conf, without any change to dlrun."""
