"""Where the testbed is: the site's time zone (IIT Gandhinagar, seed paper section 5.4).

Times are timezone-aware UTC everywhere inside the project; this zone is for the local clock of
the site (load and PV profiles, plug-in times, tariff hours) and for showing times to people.
"""

SITE_TIMEZONE = "Asia/Kolkata"
